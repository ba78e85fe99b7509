"""`python -m plantline.pki`: the same CLI as `plantline-pki`, for hosts without the script on PATH."""

from plantline.pki.cli import main

main()
