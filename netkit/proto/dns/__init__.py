"""DNS without sockets or clocks: messages (`message`), the answer cache on the wire
(`wire`), names and root hints (`names`), the RRset cache (`cache`), what a response
means (`classify`), the recursion engine (`recursion`) and the server's policy
(`policy`: who may ask, how fast, and what is answered locally)."""
