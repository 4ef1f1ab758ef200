"""Test support code. The Kubernetes harness is described in README.md next to this file.

Nothing is re-exported here: import from the sub-modules (``tests.support.cluster``, ``.api``, ``.kubelet``,
``.operators``, ``.waiting``), so that tests which need none of it do not pay for importing kopf and kmock.
"""
