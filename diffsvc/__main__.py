from diffsvc.cli.main import main

raise SystemExit(main())
