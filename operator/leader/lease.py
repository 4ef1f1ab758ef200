"""Reads and writes the operator's Lease: the only API calls of leader election.

They go through their own small client rather than ``kube.py`` because they have a deadline the
operator's other calls do not: each request gets at most the time left before the holder must give up,
so a hanging API server cannot keep a replica believing it leads.
"""

from __future__ import annotations

import json
from typing import Any

import pykube
import requests
from pykube.objects import NamespacedAPIObject

from orchest_operator.leader.election import API_VERSION, Record


class Lease(NamespacedAPIObject):
    version = API_VERSION
    endpoint = "leases"
    kind = "Lease"


class LeaseError(Exception):
    """The API server answered a Lease call with an error."""


class Conflict(LeaseError):
    """Another replica wrote the Lease first (409): this attempt lost the race."""


def _check(response: requests.Response) -> dict[str, Any]:
    # pykube's raise_for_status fails with KeyError on an answer without a Content-Type (a proxy's 503)
    if response.status_code >= 400:
        raise LeaseError(f"{response.status_code} {response.reason}: {response.text[:200]}")
    body: dict[str, Any] = response.json()
    return body


class LeaseClient:
    """GET, create and update of one named Lease in one namespace."""

    def __init__(self, api: pykube.HTTPClient, namespace: str, name: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name

    def _kwargs(self, timeout: float, name: str | None = None) -> dict[str, Any]:
        url = "/".join(part for part in (Lease.endpoint, name) if part)
        return {"version": Lease.version, "url": url, "namespace": self.namespace, "timeout": timeout}

    def get(self, timeout: float) -> Record | None:
        response = self.api.get(**self._kwargs(timeout, self.name))
        if response.status_code == 404:
            return None
        return Record.from_lease(_check(response))

    def create(self, record: Record, timeout: float) -> Record:
        body = {
            "apiVersion": Lease.version,
            "kind": Lease.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.spec(),
        }
        return self._write("post", self._kwargs(timeout), body)

    def update(self, record: Record, timeout: float) -> Record:
        """PUT with the resourceVersion the record was read at: a write in between makes it a 409."""
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version:
            metadata["resourceVersion"] = record.resource_version
        body = {"apiVersion": Lease.version, "kind": Lease.kind, "metadata": metadata, "spec": record.spec()}
        return self._write("put", self._kwargs(timeout, self.name), body)

    def _write(self, method: str, kwargs: dict[str, Any], body: dict[str, Any]) -> Record:
        response = getattr(self.api, method)(
            **kwargs, data=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        if response.status_code == 409:
            raise Conflict(f"Lease {self.namespace}/{self.name} was written by another replica")
        return Record.from_lease(_check(response))
