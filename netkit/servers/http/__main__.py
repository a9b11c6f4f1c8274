import sys

from netkit.servers.http.server import main

sys.exit(main())
