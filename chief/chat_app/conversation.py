"""One chat session: read the files, ask the Chief for a plan, show it, run it, answer commands and buttons.

Everything here calls core (`ChiefOfStaff`, `Engine`, `Ingestor`, `ChatStore`); Chainlit is only the
screen. A session never owns a run: it starts runs in the engine and watches them (`RunView`).
"""

from __future__ import annotations

import logging
import shlex
import uuid
from typing import Any

import chainlit as cl

from ..core.accounting import conversation_usage
from ..core.chief import Plan, fill_inputs, parse_pairs
from ..core.errors import ChiefError, FileRefused, WorkflowError
from ..core.files import IngestedFile
from ..core.store import FINISHED_EXECUTION_STATUSES
from ..core.workflows import WorkflowSpec, parse_workflow, spec_from_data
from .board import board_props, plan_markdown
from .live import RunView, tokens_text
from .runtime import ChatRuntime, confirm_plans
from .settings import METADATA_KEY, choice_from, describe, prices, usage_table, usage_text, widgets

log = logging.getLogger(__name__)

HELP = """**Commands**

| command | what it does |
| --- | --- |
| `/help` | this list |
| `/workflows` | the workflows the Chief can run |
| `/run NAME key=value ...` | run a workflow directly (attached files fill its file inputs) |
| `/runs` | the runs of this conversation and their status |
| `/pause [RUN]`, `/resume [RUN]`, `/cancel [RUN]` | control a run (default: the latest of this conversation) |
| `/approve [STEP] [RUN]`, `/reject [STEP] [RUN]` | decide on a step that waits for approval |
| `/usage` | tokens (and cost, with `CHIEF_PRICES`) of this conversation's runs |

The model this conversation uses is in the chat settings (the ⚙️ next to the message box).

Or just ask: "Review this change for security and quality" with `changes.diff` attached.
"""


class Conversation:
    """The state of one chat session (kept in `cl.user_session`)."""

    def __init__(self, runtime: ChatRuntime, *, user_id: str | None) -> None:
        self.runtime = runtime
        self.user_id = user_id
        self.views: dict[str, RunView] = {}
        self.pending: dict[str, Plan] = {}  # plans waiting for "Run" (CHIEF_CONFIRM_PLANS=1)
        self.model_choice: dict[str, str] | None = None  # the chat settings' provider/model (None: defaults)
        self.turns: list[dict[str, str]] = []  # the conversation so far: requests and final answers

    @property
    def thread_id(self) -> str:
        return cl.context.session.thread_id

    # -- start and re-attach --------------------------------------------------------------------------
    async def start(self) -> None:
        """Greet; re-attach to this user's unfinished runs (a reload or a lost connection loses nothing)."""
        await cl.Message(content="Hello — I am the Chief. Ask for something and attach files; `/help` lists the "
                                 "commands.", author="Chief").send()
        await self.send_settings()
        for record in await self._unfinished_runs():
            await self.reattach(record.id, note="Still running from before:")

    async def resume(self, thread: dict[str, Any]) -> None:
        """An old conversation reopened: its model setting and history come back; watch its unfinished runs."""
        metadata = thread.get("metadata") or {}
        kept = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
        self.model_choice = dict(kept) if isinstance(kept, dict) and kept else None
        self.turns = turns_of(thread.get("steps") or [])
        await self.send_settings()
        for record in await self.runtime.engine.store.list_executions(conversation_id=thread["id"], limit=20):
            watched = self.views.get(record.id)
            if watched is not None and watched.task is not None and not watched.task.done():
                continue  # a restored session (network blip): its view is still live; Chainlit re-renders the rest
            if record.status not in FINISHED_EXECUTION_STATUSES:
                await self.reattach(record.id, note="This conversation's run is still going:")

    async def _unfinished_runs(self) -> list[Any]:
        store = self.runtime.engine.store
        records = await store.list_executions(status=["pending", "running", "pausing", "paused", "waiting"], limit=20)
        mine = []
        for record in records:
            if record.conversation_id is None or record.conversation_id == self.thread_id:
                continue
            if await self._owns(record):
                mine.append(record)
        return mine[:5]

    async def _owns(self, record: Any) -> bool:
        if record.conversation_id is None:
            return self.user_id is None
        owner = await self.runtime.chat.thread_user_id(record.conversation_id)
        return owner == self.user_id

    async def reattach(self, execution_id: str, *, note: str | None = None) -> RunView | None:
        """Show an existing run in this session and keep watching it."""
        record = await self.runtime.engine.store.get_execution(execution_id)
        if record is None or not await self._owns(record):
            return None
        spec = await self._spec_of(record)
        view = RunView(self.runtime, record.id, spec)
        self.views[record.id] = view
        await view.open_message(note=note)
        view.start_watching()
        await view.subscribed.wait()
        return view

    async def _spec_of(self, record: Any) -> WorkflowSpec:
        workflow = await self.runtime.engine.store.get_workflow(record.workflow_id) if record.workflow_id else None
        if workflow is None:
            return self.runtime.engine.find_workflow(record.workflow_name)
        return spec_from_data(workflow.definition, source=f"<execution {record.id}>")

    # -- the model setting -------------------------------------------------------------------------------
    @property
    def default_provider(self) -> str:
        return self.runtime.chief.provider_name

    async def send_settings(self) -> None:
        """Show the chat settings panel (provider and model) with this conversation's choice."""
        registry = self.runtime.engine.registry
        await cl.ChatSettings(widgets(registry, self.model_choice, default_provider=self.default_provider)).send()

    async def settings_update(self, settings: dict[str, Any]) -> None:
        """The user changed the chat settings: keep the choice here and in the thread (a reload keeps it)."""
        try:
            choice = choice_from(settings, self.runtime.engine.registry)
        except ChiefError as exc:
            await self.say(f"⚠️ {exc}; the model setting is unchanged "
                           f"({describe(self.model_choice, default_provider=self.default_provider)}).")
            return
        self.model_choice = choice
        await self._keep_choice()
        await self.say(f"This conversation now uses {describe(choice, default_provider=self.default_provider)} "
                       "for planning and for its runs' steps (a step or agent that names its own model keeps it).")

    async def _keep_choice(self) -> None:
        from chainlit.data import get_data_layer

        data_layer = get_data_layer()
        if data_layer is None:
            return
        try:
            await data_layer.update_thread(self.thread_id, metadata={METADATA_KEY: self.model_choice or {}})
        except Exception:  # noqa: BLE001 - the setting still applies to this session
            log.exception("cannot keep the model setting of thread %s", self.thread_id)

    # -- messages -------------------------------------------------------------------------------------
    async def on_message(self, message: cl.Message) -> None:
        """A user message: a command, or a request to plan and run (with its files)."""
        text = (message.content or "").strip()
        files = await self.read_files(message.elements or [])
        if text.startswith("/"):
            await self.command(text, files)
            return
        if not text and not files:
            await cl.Message(content="Attach a file I can read, or tell me what you need.", author="Chief").send()
            return
        await self.plan_and_run(text or "Summarise the attached files", files)

    async def read_files(self, elements: list[Any]) -> list[IngestedFile]:
        """Ingest uploads as visible work (a step per batch); refusals are said plainly, the rest goes on."""
        uploads = [e for e in elements if getattr(e, "path", None)]
        if not uploads:
            return []
        ok: list[IngestedFile] = []
        refused: list[str] = []
        async with cl.Step(name="read-files", type="tool", show_input=False) as step:
            lines = []
            for element in uploads:
                try:
                    f = await self.runtime.ingestor.ingest(element.path, element.name)
                except FileRefused as exc:
                    refused.append(str(exc))
                    lines.append(f"🚫 {exc}")
                    continue
                await self.runtime.chat.add_file(name=f.name, mime=f.mime, size=f.size, storage_key=f.key,
                                                 status="extracted", user_id=self.user_id, thread_id=self.thread_id,
                                                 text=f.text)
                ok.append(f)
                lines.append(f"📄 {f.name} — {f.mime}, {f.size:,} bytes, {len(f.text or ''):,} characters read "
                             f"({f.meta.get('extractor')})")
            step.output = "\n".join(lines)
        if refused:
            await cl.Message(content="**Refused:**\n" + "\n".join(f"- {r}" for r in refused), author="Chief").send()
        return ok

    async def plan_and_run(self, request: str, files: list[IngestedFile]) -> None:
        """Ask the Chief for a plan, show it, and run it (or wait for "Run")."""
        history = list(self.turns)
        async with cl.Step(name="plan", type="tool", show_input=False) as step:
            plan = await self.runtime.chief.plan(request, [f.extracted() for f in files], history,
                                                 conversation=self.model_choice)
            step.output = f"{plan.planner} planner → `{plan.spec.name}`"
            if plan.model:
                step.output += f" (planned with {plan.model})"
            if plan.tokens:
                step.output += " · planning: " + tokens_text(plan.tokens["tokens_in"], plan.tokens["tokens_out"],
                                                              estimated=plan.tokens["estimated"])
            if plan.notes:
                step.output += "\n\nContext:\n" + "\n".join(f"- {n}" for n in plan.notes)
            if plan.problems:
                step.output += "\n\nPlanner problems:\n" + "\n".join(f"- {p}" for p in plan.problems[:10])
        self.turns.append({"role": "user", "content": request})
        await self.show_plan(plan)

    def _answered(self, text: str) -> None:
        """A run's final answer joins the conversation's history (what the next plan sees)."""
        self.turns.append({"role": "assistant", "content": text})

    async def show_plan(self, plan: Plan) -> None:
        """Post the plan (text and graph); run it now or wait for the Run button."""
        board = cl.CustomElement(name="PlanBoard", props=board_props(plan.spec, title=f"plan: {plan.spec.name}"),
                                 display="inline")
        text = plan_markdown(plan.spec, planner=plan.planner, reason=plan.reason, inputs=plan.inputs)
        if confirm_plans():
            plan_id = uuid.uuid4().hex[:12]
            self.pending[plan_id] = plan
            await cl.Message(content=text, author="Chief", elements=[board], actions=[
                cl.Action(name="chief_run_plan", payload={"plan": plan_id}, label="Run", icon="play"),
                cl.Action(name="chief_drop_plan", payload={"plan": plan_id}, label="Discard", icon="x"),
            ]).send()
            return
        await cl.Message(content=text, author="Chief", elements=[board]).send()
        await self.run(plan.spec, plan.inputs)

    async def run(self, spec: WorkflowSpec, inputs: dict[str, Any]) -> RunView | None:
        """Start a run in the engine and watch it (subscribed before it starts: no event is missed)."""
        try:
            spec.bind_inputs(inputs)
        except WorkflowError as exc:
            await self.say("I cannot run that: " + "; ".join(str(p) for p in exc.problems))
            return None
        execution_id = uuid.uuid4().hex
        view = RunView(self.runtime, execution_id, spec)
        view.on_answer = self._answered
        self.views[execution_id] = view
        await view.open_message()
        view.start_watching()
        await view.subscribed.wait()
        # Chat runs stream their answers into the steps, and use the conversation's model setting.
        settings: dict[str, Any] = {"stream": True}
        if self.model_choice:
            settings["conversation"] = dict(self.model_choice)
        try:
            await self.runtime.engine.start(spec, inputs, conversation_id=self.thread_id, execution_id=execution_id,
                                            settings=settings)
        except ChiefError as exc:
            if view.task is not None:
                view.task.cancel()
            await self.say(f"The run could not start: {exc}")
            return None
        return view

    async def say(self, text: str) -> None:
        await cl.Message(content=text, author="Chief").send()

    # -- commands ---------------------------------------------------------------------------------------
    async def command(self, text: str, files: list[IngestedFile]) -> None:
        """`/help`, `/workflows`, `/run`, `/runs`, `/pause`, `/resume`, `/cancel`, `/approve`, `/reject`."""
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        name, args = words[0][1:].lower(), words[1:]
        try:
            if name == "help":
                await self.say(HELP)
            elif name == "workflows":
                await self.say(self._workflows_text())
            elif name == "runs":
                await self.say(await self._runs_text())
            elif name == "usage":
                await self.say(await self._usage_text())
            elif name == "run":
                await self._run_command(text, args, files)
            elif name in ("pause", "resume", "cancel"):
                await self.control(name, await self._target(args[0] if args else None))
            elif name in ("approve", "reject"):
                step = args[0] if args else None
                target = await self._target(args[1] if len(args) > 1 else None)
                await self.decide(target, step, approved=name == "approve")
            else:
                await self.say(f"Unknown command `/{name}`.\n\n{HELP}")
        except ChiefError as exc:
            await self.say(f"⚠️ {exc}")

    def _workflows_text(self) -> str:
        lines = ["**Workflows**", "", "| name | what it does | inputs |", "| --- | --- | --- |"]
        for name, spec in sorted(self.runtime.chief.catalog().items()):
            inputs = ", ".join(f"`{k}`{'*' if i.required else ''}" for k, i in spec.inputs.items())
            lines.append(f"| `{name}` | {' '.join(spec.description.split())} | {inputs} |")
        lines += ["", "`*` required · run one with `/run NAME key=value ...`"]
        return "\n".join(lines)

    async def _runs_text(self) -> str:
        records = await self.runtime.engine.store.list_executions(conversation_id=self.thread_id, limit=50)
        if not records:
            return "No runs in this conversation yet."
        lines = ["**Runs of this conversation**", "", "| run | workflow | status | started |", "| --- | --- | --- | --- |"]
        for r in records:
            started = r.created_at.strftime("%H:%M:%S") if r.created_at else "-"
            lines.append(f"| `{r.id[:8]}` | {r.workflow_name} | {r.status} | {started} |")
        return "\n".join(lines)

    async def _usage_text(self) -> str:
        table, problem = prices()
        usage = await conversation_usage(self.runtime.engine.store, self.thread_id, table)
        head = f"**Usage of this conversation** (model: {describe(self.model_choice, default_provider=self.default_provider)})"
        text = f"{head}\n\n{usage_text(usage, problem=problem)}"
        if usage.by_model:
            text += "\n\n" + usage_table(usage)
        if usage.unpriced_models:
            text += "\n\nNo price in `CHIEF_PRICES` for: " + ", ".join(f"`{m}`" for m in usage.unpriced_models)
        return text

    async def _run_command(self, text: str, args: list[str], files: list[IngestedFile]) -> None:
        given, rest = parse_pairs(text.split(None, 1)[1] if len(text.split(None, 1)) > 1 else "")
        names = rest.split()
        spec, inputs_files = None, files
        if names and names[0] in self.runtime.chief.catalog():
            spec = self.runtime.chief.catalog()[names[0]]
        else:
            # A workflow file attached to the message (YAML/JSON, data only: it is validated, never executed).
            wanted = names[0] if names else None
            for f in files:
                if (wanted is None or f.name == wanted) and f.name.lower().endswith((".yaml", ".yml", ".json")):
                    spec = self._parse_workflow_file(f)
                    inputs_files = [g for g in files if g is not f]
                    break
        if spec is None:
            if not names:
                raise ChiefError("usage: /run NAME key=value ... (see /workflows), or /run with a workflow file attached")
            raise ChiefError(f"no workflow '{names[0]}' (see /workflows)")
        inputs = fill_inputs(spec, " ".join(names[1:]), [f.extracted() for f in inputs_files], given)
        plan = Plan(spec, inputs, planner="/run", reason="asked for by name")
        await self.show_plan(plan)

    def _parse_workflow_file(self, f: IngestedFile) -> WorkflowSpec:
        registry = self.runtime.engine.registry
        try:
            return parse_workflow(f.text or "", source=f.name, agents=list(registry.agents),
                                  capabilities=registry.capabilities(), workflows=list(self.runtime.chief.catalog()))
        except WorkflowError as exc:
            raise ChiefError(f"{f.name} is not a valid workflow: " + "; ".join(str(p) for p in exc.problems)) from exc

    async def _target(self, ref: str | None) -> str:
        if ref:
            record = await self.runtime.engine.store.get_execution(ref)
            if record is None or not await self._owns(record):
                raise ChiefError(f"no run '{ref}' in your conversations")
            return record.id
        records = await self.runtime.engine.store.list_executions(conversation_id=self.thread_id, limit=1)
        if not records:
            live = [v for v in self.views.values()]
            if live:
                return live[-1].execution_id
            raise ChiefError("no run in this conversation yet")
        return records[0].id

    async def control(self, what: str, execution_id: str) -> None:
        """Pause, resume or cancel a run this user owns."""
        record = await self.runtime.engine.store.get_execution(execution_id)
        if record is None or not await self._owns(record):
            raise ChiefError("that run is not yours")
        engine = self.runtime.engine
        result = await {"pause": engine.pause, "resume": engine.resume, "cancel": engine.cancel}[what](execution_id)
        if execution_id not in self.views:
            await self.reattach(execution_id)
        await self.say(f"Run `{execution_id[:8]}`: {result}.")

    async def decide(self, execution_id: str, step: str | None, *, approved: bool) -> None:
        """Approve or reject a waiting step (the only one waiting when `step` is None)."""
        record = await self.runtime.engine.store.get_execution(execution_id)
        if record is None or not await self._owns(record):
            raise ChiefError("that run is not yours")
        view = self.views.get(execution_id)
        if step is None:
            waiting = view.waiting if view is not None else []
            if len(waiting) != 1:
                raise ChiefError("name the step: /approve STEP (waiting: " + (", ".join(waiting) or "none") + ")")
            step = waiting[0]
        user = cl.user_session.get("user")
        result = await self.runtime.engine.approve(execution_id, step, approved,
                                                   by=getattr(user, "identifier", None) or "local user")
        await self.say(f"Step `{step}` {result}.")

    async def run_pending(self, plan_id: str) -> None:
        """The Run button of a plan that waited for confirmation."""
        plan = self.pending.pop(plan_id, None)
        if plan is None:
            await self.say("That plan has already been run or discarded.")
            return
        await self.run(plan.spec, plan.inputs)


def turns_of(steps: list[dict[str, Any]]) -> list[dict[str, str]]:
    """A reopened thread's history: the user's requests (not commands) and the runs' final answers."""
    turns: list[dict[str, str]] = []
    for step in steps:
        text = str(step.get("output") or "").strip()
        if not text:
            continue
        if step.get("type") == "user_message" and not text.startswith("/"):
            turns.append({"role": "user", "content": text})
        elif step.get("type") == "assistant_message" and (step.get("metadata") or {}).get("chief") == "answer":
            turns.append({"role": "assistant", "content": text})
    return turns
