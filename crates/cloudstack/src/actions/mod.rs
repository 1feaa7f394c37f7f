//! One module per action group; [`dispatch`] routes a classified action.

pub mod console;
pub mod custom;
pub mod lifecycle;
pub mod params;
pub mod power;

use crate::action::Action;
use crate::ctx::Ctx;
use crate::output::Reply;
use polyvisor_core::{Error, Result};

/// Runs a VM action (Java commands and unknown actions never get here).
pub async fn dispatch(ctx: &Ctx, action: &Action) -> Result<Reply> {
    match action {
        Action::Prepare => lifecycle::prepare(ctx).await,
        Action::Create => lifecycle::create(ctx).await,
        Action::Start => lifecycle::start(ctx).await,
        Action::Stop => lifecycle::stop(ctx).await,
        Action::Reboot => lifecycle::reboot(ctx).await,
        Action::Delete => lifecycle::delete(ctx).await,
        Action::Status => power::status(ctx).await,
        Action::Statuses => power::statuses(ctx).await,
        Action::GetConsole => console::getconsole(ctx).await,
        Action::Custom(c) => custom::run(ctx, *c).await,
        Action::JavaCommand(_) | Action::Unknown(_) => Err(Error::internal("unroutable action")),
    }
}
