"""jupyter-server of an orchest session: a front end whose kernels all run through Enterprise Gateway.

The operator starts it with ``--gateway-url`` (or ``JUPYTER_GATEWAY_URL``) pointing at the session's EG
Service, the token in ``JUPYTER_TOKEN`` (from the session's Secret) and ``--ServerApp.root_dir`` set to
the pipeline volume's mount path. Everything else is fixed here.
"""

import os

c = get_config()  # noqa: F821 (defined by traitlets when it loads this file)

c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.allow_remote_access = True
# The kernel image may still be pulling on the node: give EG time to answer a kernel start.
c.GatewayClient.request_timeout = float(os.environ.get("JUPYTER_GATEWAY_REQUEST_TIMEOUT", "300"))
c.GatewayClient.connect_timeout = float(os.environ.get("JUPYTER_GATEWAY_CONNECT_TIMEOUT", "60"))
