from plantline.historian.cli import main

raise SystemExit(main())
