from ampx.cli.main import main

main()
