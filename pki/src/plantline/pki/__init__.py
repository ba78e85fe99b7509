"""PlantLine's certificate authority: CA hierarchy, profiles, issue, renew, revoke, CRL, rotate.

The library is what the `plantline-pki` CLI, the operator and `plantline up` all call.
"""

from plantline.pki.authority import Authority, IssuedCertificate
from plantline.pki.errors import PkiError
from plantline.pki.keys import KeySpec
from plantline.pki.renewal import Action, Decision, RenewalPolicy, decide

__all__ = ["Action", "Authority", "Decision", "IssuedCertificate", "KeySpec", "PkiError", "RenewalPolicy", "decide"]
