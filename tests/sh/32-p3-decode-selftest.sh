#!/usr/bin/env bash
# The independent P3 decoder (tests/tools/p3_decode.py) checked against hand-built vectors,
# before the golden test trusts it as the oracle for p3d's WAN output.
set -u
root=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
py=/usr/bin/python3
if ! "$py" -c 'import scapy, cryptography' 2>/dev/null; then
  echo "skip: /usr/bin/python3 lacks python3-scapy or python3-cryptography"
  exit 77
fi
exec "$py" "$root/tests/tools/test_p3_decode.py"
