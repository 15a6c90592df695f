"""Names vulture cannot see used (make lint): read by a library, a framework or the wire.

Each is written by our code and read elsewhere: an attribute a library's object reads,
a pydantic field that only travels (parsed from or serialized to JSON), an interface
method a library calls. Dead code is deleted, never listed here.
"""

# ruff: noqa: B018
from vulture.whitelist_utils import Whitelist

_ = Whitelist()

# attributes of library objects, read by the library
_.connection_pool_maxsize  # kubernetes.client.Configuration
_.verify_mode  # ssl.SSLContext
_.cert_file  # kubernetes.client.Configuration (tests)
_.api_key  # kubernetes.client.Configuration (tests)
_.progress_storage  # kopf.OperatorSettings
_.diffbase_storage  # kopf.OperatorSettings
_.max_workers  # kopf.OperatorSettings
_._bound_port  # aiohttp.web.TCPSite (its `port` reads it; proxy_gate.ProxyProtocolSite sets it)
# a reference that keeps a fire-and-forget task from being garbage-collected
_._liveness_kill
# pydantic fields that only travel: parsed from the Kubernetes API or sent on the wire
_.divisor
_.protocol
_.medium
_.subdomain
_.last_probe_time
_.last_seen_seconds_ago
_.fleet_policy_version
_.converged_nodes
_.expired_entries
_.pod_template_hash
# http_message_signatures.HTTPSignatureKeyResolver, called by that library (tests)
_.resolve_public_key
_.resolve_private_key
# pydantic fields of model/scheduling.py that only travel: the Pod API's own, sent to it
_.effect
_.hostnames
_.match_fields
_.match_label_keys
_.max_skew
_.min_domains
_.mismatch_label_keys
_.namespace_selector
_.node_affinity_policy
_.node_taints_policy
_.preference
_.toleration_seconds
_.topology_key
_.when_unsatisfiable
# enum members only parsed from a custom resource (spec.exposure.type)
_.NODE_PORT
_.LOAD_BALANCER
# http.server's handler hooks and server flag (tests/support/git_http.py)
_.do_GET
_.do_POST
_.log_message
_.daemon_threads
# read by kubernetes.aio when it builds its aiohttp session (operator k8s.py)
_.client_session_kwargs
