"""Policy enforcement: bans, rate limits, escalation and the policy document's lifecycle.

Pure decision modules (`ratelimit`, `bans`, `escalation`, `compiled`) take the
time as an argument; `enforcer` composes them behind one door; `watch` is the
only module here that does I/O (reading the mounted policy directory).
"""
