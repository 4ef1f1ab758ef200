"""PipelineJobs: batches of PipelineRuns, once, on a schedule, or on demand, over a grid of parameters.

``schedule`` (when ticks fall) and ``reconcile`` (which runs a job should have) are pure; ``controller``
carries out what ``reconcile`` decides against the API.
"""
