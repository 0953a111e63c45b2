from lamina.cli import main

raise SystemExit(main())
