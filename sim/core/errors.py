"""Model exceptions, named after the NGINX Plus API error codes they become.

The model raises these with nginx's wording in ``text``; it knows nothing of HTTP. ``api/``
maps each ``code`` to its HTTP status in one table.
"""

from __future__ import annotations


class SimError(Exception):
    """Base of every model error that an API client can provoke."""

    code = "SimError"

    def __init__(self, text: str):
        self.text = text
        super().__init__(text)


def _error(name: str, doc: str) -> type[SimError]:
    cls = type(name, (SimError,), {"code": name, "__doc__": doc})
    return cls


UpstreamNotFound = _error("UpstreamNotFound", "No upstream of that name.")
UpstreamStatic = _error("UpstreamStatic", "The upstream has no shared memory zone and cannot change at run time.")
UpstreamServerNotFound = _error("UpstreamServerNotFound", "No server with that id in the upstream.")
UpstreamBadServerId = _error("UpstreamBadServerId", "A server id that is not a non-negative integer.")
UpstreamConfFormatError = _error("UpstreamConfFormatError", "A malformed server object.")
UpstreamBadAddress = _error("UpstreamBadAddress", "A server address that cannot be used.")
UpstreamBadWeight = _error("UpstreamBadWeight", "weight out of range.")
UpstreamBadMaxConns = _error("UpstreamBadMaxConns", "max_conns out of range.")
UpstreamBadMaxFails = _error("UpstreamBadMaxFails", "max_fails out of range.")
UpstreamBadFailTimeout = _error("UpstreamBadFailTimeout", "fail_timeout is not a valid time.")
UpstreamBadSlowStart = _error("UpstreamBadSlowStart", "slow_start is not a valid time.")
UpstreamBadRoute = _error("UpstreamBadRoute", "route longer than 32 characters.")
UpstreamBadService = _error("UpstreamBadService", "An empty service name.")
UpstreamConfNoResolver = _error("UpstreamConfNoResolver", "A domain name but no resolver to resolve it.")
UpstreamNoBackup = _error("UpstreamNoBackup", "A backup server in an upstream that cannot have one.")
UpstreamOutOfMemory = _error("UpstreamOutOfMemory", "The upstream's shared memory zone is full.")
UpstreamServerImmutable = _error("UpstreamServerImmutable", "The server's address cannot change or be removed.")
UpstreamServerWeightImmutable = _error("UpstreamServerWeightImmutable", "The server's weight cannot change.")
EntryExists = _error("EntryExists", "The entry already exists.")
ServerZoneNotFound = _error("ServerZoneNotFound", "No server zone of that name.")
LocationZoneNotFound = _error("LocationZoneNotFound", "No location zone of that name.")
CacheNotFound = _error("CacheNotFound", "No cache of that name.")
SlabNotFound = _error("SlabNotFound", "No shared memory zone of that name.")
LimitReqNotFound = _error("LimitReqNotFound", "No limit_req zone of that name.")
LimitConnNotFound = _error("LimitConnNotFound", "No limit_conn zone of that name.")
ResolverZoneNotFound = _error("ResolverZoneNotFound", "No resolver zone of that name.")
WorkerNotFound = _error("WorkerNotFound", "No worker with that id.")
KeyvalNotFound = _error("KeyvalNotFound", "No keyval zone of that name.")
ZoneSyncNotConfigured = _error("ZoneSyncNotConfigured", "zone_sync is not configured on this node.")
StreamNotConfigured = _error("StreamNotConfigured", "There is no stream block.")
