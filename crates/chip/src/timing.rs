//! The A110's processing times ([OLDMW] `stsafea110.h`, protocol.md §1.6).

use core::time::Duration;

use sesame_wire::CommandCode;

/// Wake-up time from hibernate (and boot time).
pub const WAKE_UP: Duration = Duration::from_millis(10);

/// Minimum processing time of a command on an A110.
pub fn processing_time(code: CommandCode) -> Duration {
    let ms = match code {
        CommandCode::ECHO | CommandCode::READ => 0,
        CommandCode::RESET => 30,
        CommandCode::GENERATE_RANDOM | CommandCode::DECREMENT | CommandCode::UPDATE => 15,
        CommandCode::START_SESSION => 25,
        CommandCode::HIBERNATE => 50,
        CommandCode::WRAP_LOCAL_ENVELOPE => 125,
        CommandCode::UNWRAP_LOCAL_ENVELOPE => 150,
        CommandCode::PUT_ATTRIBUTE | CommandCode::DELETE | CommandCode::VERIFY_PASSWORD => 15,
        CommandCode::GENERATE_KEY => 160,
        CommandCode::QUERY => 1,
        CommandCode::GENERATE_SIGNATURE => 80,
        CommandCode::VERIFY_SIGNATURE => 150,
        CommandCode::ESTABLISH_KEY => 260,
        _ => 1,
    };
    Duration::from_millis(ms)
}
