from maskdepth.cli import main

raise SystemExit(main())
