from plantline.bridge.cli import main

raise SystemExit(main())
