"""`python -m glue_lora.bench` (`make bench`, `glue-lora bench`): ours vs transformers Trainer + PEFT.

Three training settings run on the same rows, model, LoRA config, optimizer, schedule, batch size
and number of optimizer steps:

- ``ours``: ``glue_lora.train.run`` on the composed config (the code path of train.py);
- ``peer_default``: ``Trainer`` + ``get_peft_model`` as ``run_glue.py`` runs by default (every
  example padded to ``data.max_length``, random batches);
- ``peer_best``: the same with dynamic padding (``DataCollatorWithPadding``) and length-grouped
  batches.

Each (setting, repeat) runs in a fresh process, so peak memory (RSS on CPU, peak allocated CUDA
memory on GPU) is its own; the order of the settings alternates between repeats. The steps after
``--warmup`` (0 on CPU, 10 on GPU) are timed, evaluation excluded. The report gives the median and
the spread of each figure and the ratio ours/peer, prints a table and writes the same to
``--out`` as JSON. It also reports the memory figures computed from the built model (meta device)
and the inference speed of merged and unmerged LoRA against the base model.

``--time-to-accuracy 0.85`` instead trains ours and the peer at its best until the dev score
reaches 0.85 (evaluating every ``--eval-every`` steps, at most ``--steps``) and compares the
training seconds it took.
"""
