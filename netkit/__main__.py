import sys

from .cli import netkit_main

sys.exit(netkit_main())
