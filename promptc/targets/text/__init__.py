"""The text target: a task rendered as plain text, chat messages or a chat template, and its artifact."""
