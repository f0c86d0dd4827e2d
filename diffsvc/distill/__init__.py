"""Distillation: a few-step student from a trained Diff-SVC model (`diffsvc distill`).

    student.py    where a project's student lives, the `distill` record that says what it is,
                  and finding it for infer
    objective.py  consistency distillation: the loss, the target network (an EMA of the student)
    trainer.py    DistillTrainer: the training loop of `train` with the student's model, loss,
                  config and validation (student against teacher)

The student samples with diffsvc.sampling.consistency (`--sampler consistency`).
"""
