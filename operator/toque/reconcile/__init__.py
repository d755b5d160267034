"""Pure decide functions: ``(resource, observed children, now) -> Plan``. No I/O, no kopf."""
