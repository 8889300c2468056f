from asgiscale.main import main

main()
