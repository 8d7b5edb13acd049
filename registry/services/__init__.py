"""Every write goes through a service here: keyword-only, typed, an explicit actor, time as an argument,
owning its transaction and writing its audit event in it."""
