"""The data of a task: the task table, reading split files, tokenizing (cached), batches, the data module."""
