"""%nbinfer (line magic) and %%generate (cell magic)."""
from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..engine.handle import cancel_all
from . import commands, engine_commands, remote_commands  # noqa: F401  (they register the built-ins)
from ..flags.argtypes import float_in, identifier, int_min
from .magic_parser import MagicParser
from . import session
from .generation import Generation, run_background, run_foreground
from .interrupts import cancelled_interrupt, count_aborted
from .prompts import interpolate, split_prompts


def _stop_string(text: str) -> str:
    # `--stop "\n"` means a newline: the shell-style split keeps the backslash
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _generate_arguments(p) -> None:
    p.add_argument("--max-tokens", type=int_min(1, "--max-tokens"), default=128, metavar="N",
                   help="tokens to generate per completion (default 128)")
    p.add_argument("--temperature", type=float_in(0.0, name="--temperature"), default=None, metavar="T",
                   help="0 = greedy (default: the model's generation_config.json, else 1.0)")
    p.add_argument("--top-p", type=float_in(0.0, 1.0, "--top-p"), default=None, metavar="P",
                   help="nucleus sampling (default: generation_config.json, else 1.0)")
    p.add_argument("--top-k", type=int_min(-1, "--top-k"), default=None, metavar="K",
                   help="-1 = off (default: generation_config.json, else -1)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="per-request sampling seed")
    p.add_argument("--stop", type=_stop_string, action="append", default=None, metavar="S",
                   help="stop string (repeatable; \\n and \\t are escapes)")
    p.add_argument("-n", type=int_min(1, "-n"), default=1, metavar="N", help="completions per prompt")
    p.add_argument("--chat", action="store_true", help="send each prompt as a user message via the chat template")
    p.add_argument("--system", default=None, metavar="TEXT", help="system message (implies --chat)")
    p.add_argument("--out", type=identifier, default=None, metavar="VAR",
                   help="bind the result (.text, .texts, .outputs) to this notebook variable")
    p.add_argument("--no-stream", action="store_true", help="show the result once it is complete")
    p.add_argument("--background", action="store_true",
                   help="return at once; the cell keeps streaming while you run other cells")


GENERATE_PARSER = MagicParser(prog="%%generate")
_generate_arguments(GENERATE_PARSER)


@magics_class
class NbinferMagics(Magics):

    @line_magic
    def nbinfer(self, line: str):
        """Load, inspect and unload the notebook's LLM engine (full help: %nbinfer?)."""
        return commands.dispatch(line, self.shell)

    @cell_magic
    def generate(self, line: str, cell: str):
        """Generate text from the prompt(s) in the cell body with the loaded model (or, after
        `%nbinfer connect URL`, on that server).

        The body is the prompt; {name} and {name.attr} are replaced by notebook variables (unknown
        names stay as written). Lines of exactly `---` separate several prompts, run as one batch.
        Tokens stream into the cell; with --out VAR the result is bound to VAR.
        If no model is loaded, the default model (smollm2-135m-instruct) is loaded first.
        """
        args = GENERATE_PARSER.parse_line(line)
        from ..engine.sampling_params import SamplingParams

        try:
            prompts = split_prompts(interpolate(cell, self.shell.user_ns))
        except ValueError as e:
            raise UsageError(f"%%generate: {e}") from None
        if args.background and args.no_stream:
            raise UsageError("%%generate: --background streams into the cell; it cannot be combined "
                             "with --no-stream")
        llm = session.get_target()          # the connected remote server, else the local engine
        remote = llm is session.current_remote()
        sampling = {k: v for k, v in dict(temperature=args.temperature, top_p=args.top_p,
                                          top_k=args.top_k).items() if v is not None}
        defaults = _default_sampling(llm)
        try:
            params = SamplingParams(**{**defaults, **sampling, "max_tokens": args.max_tokens, "n": args.n,
                                       "seed": args.seed, "stop": args.stop})
        except ValueError as e:
            raise UsageError(f"%%generate: {e}") from None

        chat = args.chat or args.system is not None
        payloads = prompts
        if chat:
            payloads = [([{"role": "system", "content": args.system}] if args.system is not None else [])
                        + [{"role": "user", "content": p}] for p in prompts]
            if not remote:          # a remote server applies its own template (its chat API)
                try:
                    payloads = [llm.apply_chat_template(conversation) for conversation in payloads]
                except ValueError as e:
                    raise UsageError(f"%%generate --chat: {e}") from None

        generation = Generation(prompts, args.n, system=args.system, chat=chat)
        handles = []
        try:
            submit = llm.submit_chat if chat and remote else llm.submit
            for i, payload in enumerate(payloads):
                handles.append(submit(payload, params))
        except BaseException as e:
            # a bad prompt or Ctrl-C between submits: nothing is attached to the ones already
            # submitted yet, so abort them here or they run on unseen, holding KV blocks
            cancel_all(handles)
            if isinstance(e, (ValueError, TypeError)) or _remote_feature_error(e):
                where = f"prompt {i + 1}: " if len(payloads) > 1 else ""
                raise UsageError(f"%%generate: {where}{e}") from None
            if isinstance(e, KeyboardInterrupt):
                raise cancelled_interrupt(count_aborted(handles)) from None
            raise
        generation._attach(handles)
        if args.out:
            self.shell.user_ns[args.out] = generation
        if args.background:
            run_background(generation)
        else:
            run_foreground(generation, stream=not args.no_stream)


# what `%%generate?` shows: the docstring, then every flag
NbinferMagics.generate.__doc__ = (NbinferMagics.generate.__doc__ or "") + "\n" + GENERATE_PARSER.format_help()


def _remote_feature_error(e: BaseException) -> bool:
    """A remote server cannot do what the flags ask (e.g. --top-k on a plain OpenAI-compatible server)."""
    import sys
    client = sys.modules.get("nbinfer.server.client")
    return client is not None and isinstance(e, client.RemoteFeatureError)


def _default_sampling(llm) -> dict:
    """The model's recommended sampling settings (generation_config.json), as vLLM applies them;
    explicit flags override them. Without any, SamplingParams' own defaults apply."""
    p = llm.get_default_sampling_params()
    return {k: getattr(p, k) for k in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")}
