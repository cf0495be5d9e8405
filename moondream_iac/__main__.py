from moondream_iac.cli import main

main()
