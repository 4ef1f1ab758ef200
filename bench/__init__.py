"""Benchmarks of orchest against baselines measured in the same run (issue 8); see README.md here.

``python -m bench`` runs the quick set against the in-process emulator, with the operator as a
subprocess and the test harness's fake kubelet; ``--kubeconfig`` runs against a real cluster.
"""
