"""Discord application ("/") commands: a discord.py `CommandTree` that only translates.

Each command becomes one call to `commands.run_command` (the same implementation the text
commands use) and its `CommandReply` becomes an interaction response. The answer is deferred
first (Discord wants a first response within 3 s; the engine may wait on the database), then sent
as the follow-up: in a DM an ordinary message (it stays in the DM, the /export file too); in a
server an ephemeral one (flag 64: only the person who typed the command sees it), so the commands
that touch personal data work there as well. /forget answers with two buttons whose custom ids
name the person who asked; the erase happens only when that person presses "yes".

Refused before anything runs (nothing stored): an interaction older than the 15 minutes its token
lives (no answer: Discord would refuse it), a blocked person (no answer; their /forget and
/export still work), a group DM or a channel discord.py does not know (`UNSUPPORTED_PLACE`), a
server when `discord.guilds` is off (`DMS_ONLY`). The access and rate-limit rules are the text
commands' `Gate`.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import traceback
from typing import TYPE_CHECKING, Any

from bot import texts
from bot.adapters import commands as cc

if TYPE_CHECKING:
    import discord

logger = logging.getLogger(__name__)

PLATFORM = "discord"
TOKEN_LIFETIME = dt.timedelta(minutes=15)  # an interaction token's life (Discord's rule)
FORGET_ID = "solace:forget:{choice}:{owner}"
FORGET_TEMPLATE = r"^solace:forget:(?P<choice>yes|no):(?P<owner>[0-9]{1,20})$"
MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices

UNSUPPORTED_PLACE = (
    "I can only talk in a direct message with me, or in a server channel I'm part of."
)
DMS_ONLY = "Here I only talk in direct messages - send me a DM and we can talk there."
NOT_YOUR_BUTTON = "That button belongs to someone else's request, so nothing was erased."
COUNTRY_OPTION = "Two-letter code or name, e.g. GB; leave it empty to clear your country"
REVIEW_OPTION = "on or off; leave it empty to see your current choice"


def place(interaction: discord.Interaction) -> str:
    """Where an interaction happened: "dm", "server" or "other" (group DMs, unknown channels)."""
    import discord

    if interaction.guild_id is not None:
        return "server"
    if isinstance(interaction.channel, discord.DMChannel):
        return "dm"
    return "other"


def expired(interaction: discord.Interaction, now: dt.datetime | None = None) -> bool:
    """True once the interaction's token is dead (15 minutes after Discord created it)."""
    now = now or dt.datetime.now(dt.UTC)
    return now - interaction.created_at >= TOKEN_LIFETIME


async def _say(interaction: discord.Interaction, text: str) -> None:
    """A short answer (ephemeral outside DMs), as the response or a follow-up if one was sent."""
    import discord

    ephemeral = place(interaction) != "dm"
    none = discord.AllowedMentions.none()
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=ephemeral, allowed_mentions=none)
    else:
        await interaction.response.send_message(text, ephemeral=ephemeral, allowed_mentions=none)


async def admit(client: Any, interaction: discord.Interaction, command: str | None) -> bool:
    """The checks every interaction passes before it runs; False = stop (answered or not)."""
    uid = str(interaction.user.id)
    if expired(interaction):
        logger.info("expired interaction from %s dropped", client.engine.log_id(PLATFORM, uid))
        return False
    where = place(interaction)
    autocomplete = interaction.type.name == "autocomplete"
    refusal: str | None = None
    if where == "other":
        refusal = UNSUPPORTED_PLACE
    elif where == "server" and not client.settings.discord.guilds:
        refusal = DMS_ONLY
    elif autocomplete:  # every keystroke: access rules only, never counted as a command
        refusal = client.gate.access(PLATFORM, uid, command=command)
    else:  # answers are private (a DM, or ephemeral in a server)
        refusal = client.gate.refusal(PLATFORM, uid, command=command, private=True)
    if refusal is None:
        return True
    if refusal and not autocomplete:
        await _say(interaction, refusal)
    return False


async def run(client: Any, interaction: discord.Interaction, name: str, args: list[str]) -> None:
    """Run one command through `commands.run_command` and send its reply (after `admit`)."""
    import discord

    uid = str(interaction.user.id)
    where = place(interaction)
    try:  # before anything changes: an interaction Discord no longer knows stops here
        await interaction.response.defer(ephemeral=where != "dm", thinking=True)
    except discord.HTTPException as exc:
        logger.warning("discord interaction could not be answered: HTTP %s", exc.status)
        return
    async with client.order.hold(f"{interaction.channel_id}:{uid}"):
        result = await cc.run_command(
            client.engine,
            name,
            args,
            platform=PLATFORM,
            user_id=uid,
            private=True,
            admin=client.gate.policy.admin(PLATFORM, uid),
        )
    options: dict[str, Any] = {
        "ephemeral": where != "dm",
        "allowed_mentions": discord.AllowedMentions.none(),
    }
    text = result.text
    if result.attachment is not None:
        file_name, data = result.attachment
        options["file"] = discord.File(io.BytesIO(data), filename=file_name)
    if result.confirm_forget:
        text = text.replace(" " + cc.FORGET_TYPED_HINT, "")
        options["view"] = forget_view(uid)
    await interaction.followup.send(text, **options)


def forget_view(owner: str) -> discord.ui.View:
    """The /forget confirmation: "yes" and "no" buttons that only `owner` may press."""
    import discord

    view = discord.ui.View(timeout=None)
    yes: discord.ui.Button[Any] = discord.ui.Button(
        label=cc.FORGET_BUTTON_YES,
        style=discord.ButtonStyle.danger,
        custom_id=FORGET_ID.format(choice="yes", owner=owner),
    )
    no: discord.ui.Button[Any] = discord.ui.Button(
        label=cc.FORGET_BUTTON_NO,
        style=discord.ButtonStyle.secondary,
        custom_id=FORGET_ID.format(choice="no", owner=owner),
    )
    view.add_item(yes).add_item(no)
    return view


def forget_button_class(client: Any) -> type:
    """The `DynamicItem` that handles a press of either /forget button, even after a restart."""
    import re

    import discord

    class ForgetButton(
        discord.ui.DynamicItem[discord.ui.Button[Any]],
        template=re.compile(FORGET_TEMPLATE),
    ):
        def __init__(self, choice: str, owner: str) -> None:
            super().__init__(
                discord.ui.Button(custom_id=FORGET_ID.format(choice=choice, owner=owner))
            )
            self.choice, self.owner = choice, owner

        @classmethod
        async def from_custom_id(
            cls, interaction: discord.Interaction, item: Any, match: re.Match[str], /
        ) -> ForgetButton:
            return cls(match["choice"], match["owner"])

        async def callback(self, interaction: discord.Interaction) -> None:
            await press_forget(client, interaction, self.choice, self.owner)

    return ForgetButton


async def press_forget(
    client: Any, interaction: discord.Interaction, choice: str, owner: str
) -> None:
    """A /forget button: only the person who asked erases (their own data), nobody else."""
    uid = str(interaction.user.id)
    if uid != owner:  # the id in the button is Discord's record of who asked, not a claim
        logger.info("forget button refused for %s", client.engine.log_id(PLATFORM, uid))
        if not expired(interaction):
            await _say(interaction, NOT_YOUR_BUTTON)
        return
    if not await admit(client, interaction, "forget"):
        return
    await interaction.response.defer()  # type 6: the message is edited below
    if choice == "yes":
        async with client.order.hold(f"{interaction.channel_id}:{uid}"):
            text = await cc.confirm_forget(client.engine, PLATFORM, uid)
    else:
        text = cc.FORGET_CANCELLED
    await interaction.edit_original_response(content=text, view=None)


async def country_choices(client: Any, current: str) -> list[Any]:
    """Autocomplete for /country from the hotline table: codes and names that match `current`."""
    from discord import app_commands

    from bot.safety.resources import load_hotlines

    table = load_hotlines(client.settings.safety.hotlines_path)
    typed = current.strip().lower()
    found = []
    for code, country in sorted(table.countries.items(), key=lambda item: item[1].name):
        name = country.name.removeprefix("the ")
        if not typed or code.lower().startswith(typed) or typed in name.lower():
            found.append(app_commands.Choice(name=f"{name} ({code})", value=code))
    return found[:MAX_CHOICES]


def country_code(client: Any, text: str | None) -> str | None:
    """A typed country ("uk", "United Kingdom") as the table's code; else the text unchanged."""
    from bot.safety.resources import load_hotlines

    if not text:
        return None
    return load_hotlines(client.settings.safety.hotlines_path).parse_country(text) or text


async def on_tree_error(interaction: discord.Interaction, error: Exception) -> None:
    """A failed command: log its type and stack (never text) and still answer gently."""
    import discord

    cause = getattr(error, "original", error)
    stack = "".join(traceback.format_tb(cause.__traceback__))
    logger.error("discord command failed: %s\n%s", type(cause).__name__, stack)
    if isinstance(error, discord.app_commands.CommandNotFound):
        text = texts.UNKNOWN_COMMAND
    else:
        text = cc.FALLBACK
    if expired(interaction):
        return
    try:
        await _say(interaction, text)
    except discord.HTTPException as again:
        logger.error("discord fallback failed too: HTTP %s", again.status)


def build_tree(client: Any) -> Any:
    """The client's `CommandTree`: the commands of `texts.DISCORD_COMMANDS`, and the buttons."""
    from discord import app_commands

    menu = texts.DISCORD_COMMANDS

    class SolaceTree(app_commands.CommandTree):  # type: ignore[type-arg]
        async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
            data: Any = interaction.data or {}
            return await admit(client, interaction, str(data.get("name") or "") or None)

        async def on_error(
            self, interaction: discord.Interaction, error: app_commands.AppCommandError, /
        ) -> None:
            await on_tree_error(interaction, error)

    tree = SolaceTree(
        client,
        allowed_contexts=app_commands.AppCommandContext(
            guild=client.settings.discord.guilds, dm_channel=True, private_channel=False
        ),
        allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
    )

    def simple(name: str) -> None:
        async def callback(interaction: discord.Interaction) -> None:
            await run(client, interaction, name, [])

        tree.add_command(app_commands.Command(name=name, description=menu[name], callback=callback))

    for name in ("help", "privacy", "reset", "forget", "export"):
        simple(name)

    @tree.command(name="country", description=menu["country"])
    @app_commands.describe(code=COUNTRY_OPTION)
    async def country(interaction: discord.Interaction, code: str | None = None) -> None:
        await run(client, interaction, "country", [c] if (c := country_code(client, code)) else [])

    @country.autocomplete("code")
    async def country_complete(interaction: discord.Interaction, current: str) -> list[Any]:
        return await country_choices(client, current)

    @tree.command(name="review", description=menu["review"])
    @app_commands.describe(choice=REVIEW_OPTION)
    @app_commands.choices(
        choice=[
            app_commands.Choice(name="on", value="on"),
            app_commands.Choice(name="off", value="off"),
        ]
    )
    async def review(interaction: discord.Interaction, choice: str | None = None) -> None:
        await run(client, interaction, "review", [choice] if choice else [])

    # Hidden from members without Administrator (server admins may change that in the server's
    # Integrations settings), and always checked here against access.admin_user_ids.
    @tree.command(name="stats", description=menu["stats"])
    @app_commands.default_permissions(administrator=True)
    async def stats(interaction: discord.Interaction) -> None:
        await run(client, interaction, "stats", [])

    client.add_dynamic_items(forget_button_class(client))
    return tree
