"""function_app.py must stay cheap to import: the host indexes it before every cold start."""

import json
import subprocess
import sys


def test_importing_function_app_does_no_io_and_loads_no_sdk():
    probe = (
        "import json, sys, socket\n"
        "socket.socket.connect = lambda *a, **k: (_ for _ in ()).throw(AssertionError('network at import'))\n"
        "import function_app\n"
        "heavy = [m for m in sys.modules if m.startswith(('shared', 'azure.storage', 'azure.identity', "
        "'azure.keyvault', 'msal', 'requests'))]\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
