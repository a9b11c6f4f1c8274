import sys

from netkit.servers.dns.service import main

sys.exit(main())
