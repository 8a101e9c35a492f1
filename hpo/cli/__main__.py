from hpo.cli import console

console()
