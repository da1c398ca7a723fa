"""dkimpy, imported without dnspython.

`import dkim` imports `dkim.dnsplug`, which imports dnspython's resolver (about 5.6 MiB
of RSS, 60 modules) only to give `dkim.verify` a default lookup of real DNS. The lab
never asks real DNS: every lookup goes to the simulated DNS (`dnsfunc=` in
sender_auth.py), and signing needs none. So dnspython is kept out while dkimpy is
imported: dkimpy then installs its own default that raises "DKIM.verify requires DNS
or dnspython module" if a verify without `dnsfunc` ever came, which would be a lookup
of real DNS from the lab. The block covers this import only (a later `import dns`
elsewhere works). tests/test_dkim_key_files.py holds it.
"""

from __future__ import annotations

import sys

_blocked = "dns" not in sys.modules
if _blocked:
    sys.modules["dns"] = None  # type: ignore[assignment]  # `import dns...` raises ImportError
try:
    import dkim
finally:
    if _blocked:
        del sys.modules["dns"]

__all__ = ["dkim"]
