"""One router module per area of the API; each exports ``RESOURCES``, its :class:`api.deps.Resource` list.

``api.app`` mounts every resource under ``/api/{version}``, most requested first.
"""
