"""Pieces every builder shares: ownership, labels and the Pod Security "restricted" contexts."""

from __future__ import annotations

from typing import Any

from orchest_operator import naming


def owner_reference(owner: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference that makes the garbage collector delete the child with its owner."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def managed_labels(**labels: str) -> dict[str, str]:
    return {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, **labels}


def restricted_pod_security(uid: int = 1000) -> dict[str, Any]:
    """Pod-level settings for Pod Security "restricted"; ``fsGroup`` lets the user write the shared volume."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
