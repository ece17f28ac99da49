from wikichurn.cli.app import main

main()
