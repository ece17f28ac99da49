from wikichurn.cli import main

main()
