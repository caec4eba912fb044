"""The `flux` command. Commands stay thin: they parse options and call the layers."""

from __future__ import annotations

import logging
import os

import typer

from cli.commands import db, deploy, keys, local, observe, queue, secrets

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

app = typer.Typer(help="Flux: TypeScript functions as observable HTTP endpoints.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.command()(local.init)
app.command()(local.dev)
app.command()(local.invoke)
app.add_typer(secrets.app, name="secrets")
app.add_typer(keys.app, name="keys")
app.add_typer(db.app, name="db")
app.add_typer(queue.app, name="queue")
for command in (observe.trace, observe.tail, observe.logs, observe.why, observe.login):
    app.command()(command)
app.command("synth")(deploy.synth_cmd)
app.command("deploy")(deploy.deploy_cmd)
app.command("destroy")(deploy.destroy_cmd)


def main() -> None:
    logging.basicConfig(level=os.environ.get("FLUX_LOG_LEVEL", "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
