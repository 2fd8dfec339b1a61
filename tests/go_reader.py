"""How the real providers read a /system/* request: the oracle the tests check the proxy against.

It is the local provider's own reading (`localgw.go_decode`), which follows Go's
encoding/json and the faas-netes and faasd handlers, and is independent of the code under
test (`openfaas_iam.proxy.go_json`, which refuses what these would read two ways).
"""

from localgw.go_decode import faas_netes_target, faasd_target, fold_equal, secrets_mounted, unmarshal

go_unmarshal = unmarshal
_fold_eq = fold_equal

__all__ = ["faas_netes_target", "faasd_target", "go_unmarshal", "secrets_mounted"]
