"""Training: the loop (`trainer`), its settings (`config`), the loss (eq. 12-14), one step's
forward (`step`), the batches (`data`), the run's log, the class priors' fit, data parallelism."""
