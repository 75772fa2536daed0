//! Step mode: after each packet, wait for a line on standard input.
//!
//! Enter: next packet. `c`: continue without stepping. `q`: quit (the reactor asks
//! [`super::Tracer::quit_requested`]). End of input (or a read error): continue without stepping, so
//! `--step < /dev/null` and closed pipes never hang the program.

use std::io::{BufRead, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepReply {
    /// Show the next packet, then ask again.
    Next,
    /// Stop stepping.
    Continue,
    /// Stop the program.
    Quit,
}

pub(crate) struct Stepper {
    input: Box<dyn BufRead>,
    prompt: Box<dyn Write>,
    active: bool,
    line: String,
}

pub(crate) const PROMPT: &str = "[step] Enter: next packet, c: continue, q: quit > ";

impl Stepper {
    pub(crate) fn new(input: Box<dyn BufRead>, prompt: Box<dyn Write>) -> Self {
        Stepper {
            input,
            prompt,
            active: true,
            line: String::new(),
        }
    }

    /// Standard input and standard error.
    pub(crate) fn stdio() -> Self {
        Self::new(
            Box::new(std::io::BufReader::new(std::io::stdin())),
            Box::new(std::io::stderr()),
        )
    }

    #[cfg(test)]
    fn is_active(&self) -> bool {
        self.active
    }

    /// Blocks for one line (when still stepping) and says what to do.
    pub(crate) fn wait(&mut self) -> StepReply {
        if !self.active {
            return StepReply::Continue;
        }
        // The packet line must be on screen before we wait.
        crate::logbuf::flush();
        let _ = self.prompt.write_all(PROMPT.as_bytes());
        let _ = self.prompt.flush();
        self.line.clear();
        match self.input.read_line(&mut self.line) {
            Ok(0) | Err(_) => {
                self.active = false;
                StepReply::Continue
            }
            Ok(_) => match self.line.trim() {
                "c" | "C" => {
                    self.active = false;
                    StepReply::Continue
                }
                "q" | "Q" => {
                    self.active = false;
                    StepReply::Quit
                }
                _ => StepReply::Next,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn stepper(input: &'static str) -> Stepper {
        Stepper::new(Box::new(Cursor::new(input)), Box::new(std::io::sink()))
    }

    #[test]
    fn test_enter_steps_then_eof_continues() {
        let mut s = stepper("\n\n");
        assert_eq!(s.wait(), StepReply::Next);
        assert_eq!(s.wait(), StepReply::Next);
        assert_eq!(s.wait(), StepReply::Continue);
        assert!(!s.is_active());
        assert_eq!(s.wait(), StepReply::Continue);
    }

    #[test]
    fn test_c_stops_stepping() {
        let mut s = stepper("c\nq\n");
        assert_eq!(s.wait(), StepReply::Continue);
        // Not read any more: the `q` stays unread.
        assert_eq!(s.wait(), StepReply::Continue);
    }

    #[test]
    fn test_q_quits() {
        let mut s = stepper(" q \n");
        assert_eq!(s.wait(), StepReply::Quit);
    }
}
