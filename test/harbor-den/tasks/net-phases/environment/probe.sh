#!/bin/bash
# probe NAME: says whether NAME resolves through the sandbox's DNS. den's
# resolver answers NXDOMAIN, without asking upstream, for a name the
# sandbox's network policy refuses.
if getent hosts "$1" >/dev/null; then echo "$1 resolves"; else echo "$1 blocked"; fi
