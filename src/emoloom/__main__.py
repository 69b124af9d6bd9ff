from emoloom.cli import main

main()
