"""Which recipe a run uses: conf/recipe/<model>/<task>.yaml, the LoRA paper's hyperparameters."""

from __future__ import annotations


def describe_recipe(recipe: str | None, model: str, task: str) -> str:
    """One log line: the recipe applied, or that the generic defaults are used for lack of one."""
    if recipe:
        return (
            f"Recipe {recipe} (conf/recipe/{recipe}.yaml; the paper's hyperparameters "
            "where the paper has them); "
            "values given on the command line override it."
        )
    return (
        f"No recipe for model={model} task={task} (conf/recipe/{model}/{task}.yaml does not exist): "
        "using the generic defaults of conf/train.yaml and the config groups."
    )
