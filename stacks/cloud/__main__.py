"""The cloud stack's entry point."""

from plantline.stacks.cloud.program import main

main()
