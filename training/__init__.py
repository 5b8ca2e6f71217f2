"""The offline Prism pipeline: data, distillation, fine-tuning, evaluation and publishing."""
