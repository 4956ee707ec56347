"""The API server's own count of one client's requests, read from its audit log.

The suite's kube-apiserver logs the LIST and WATCH requests of the release's service
accounts at Metadata level (node_cluster.py), one JSON line per stage. 1.20 writes a
WATCH's `ResponseStarted` only when the watch ends, together with its
`ResponseComplete`; the watches open at a moment are therefore those with a
`RequestReceived` line and no `ResponseComplete`, among the requests the running
server received (a server that was killed never completes its watches).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class ClientRequests:
    """What the API server saw of one client (one user from one address)."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (verb, resource)
    open_watches: Counter[str] = field(default_factory=Counter)  # resource
    # the status code of every request that ended, per (verb, resource)
    codes: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def count(self, verb: str, resource: str) -> int:
        return self.requests[(verb, resource)]


def client_requests(audit_log: Path, user: str, source_ip: str,
                    server_started: float) -> ClientRequests:
    """The LIST and WATCH requests `user` sent from `source_ip`, as the server logged them;
    open watches among those received since `server_started` (Unix time)."""
    seen: dict[str, tuple[str, str]] = {}
    ended: set[str] = set()
    current: set[str] = set()  # received by the running server
    found = ClientRequests()
    for line in audit_log.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if (event.get("user", {}).get("username") != user
                or source_ip not in event.get("sourceIPs", ())):
            continue
        key = (event["verb"], event.get("objectRef", {}).get("resource", ""))
        seen[event["auditID"]] = key
        received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        if received >= server_started:
            current.add(event["auditID"])
        if event["stage"] == "ResponseComplete":
            ended.add(event["auditID"])
            code = int(event.get("responseStatus", {}).get("code", 0))
            found.codes[(*key, code)] += 1
    found.requests.update(seen.values())
    found.open_watches.update(
        resource for audit_id, (verb, resource) in seen.items()
        if verb == "watch" and audit_id in current and audit_id not in ended)
    return found
