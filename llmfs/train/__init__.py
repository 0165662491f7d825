"""Training: optimizer, schedules, the shared step pieces, and the pretrain / sft stages."""
