//! `argv[1]`: built-in actions (case-insensitive), custom actions (case-insensitive,
//! original spelling kept for messages), Java class names of unhandled agent commands.

/// A custom action we offer (the built-in Proxmox/Hyper-V names, spec §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Custom {
    /// `ListSnapshots`.
    ListSnapshots,
    /// `CreateSnapshot` (`snap_name`, `snap_description`, `snap_save_memory`).
    CreateSnapshot,
    /// `RestoreSnapshot` (`snap_name`).
    RestoreSnapshot,
    /// `DeleteSnapshot` (`snap_name`).
    DeleteSnapshot,
    /// `Suspend`.
    Suspend,
    /// `Resume`.
    Resume,
}

impl Custom {
    /// Every custom action, in the order the installer declares them.
    pub const ALL: [Custom; 6] = [
        Custom::ListSnapshots,
        Custom::CreateSnapshot,
        Custom::RestoreSnapshot,
        Custom::DeleteSnapshot,
        Custom::Suspend,
        Custom::Resume,
    ];

    /// The canonical (CamelCase) name.
    pub fn name(self) -> &'static str {
        match self {
            Custom::ListSnapshots => "ListSnapshots",
            Custom::CreateSnapshot => "CreateSnapshot",
            Custom::RestoreSnapshot => "RestoreSnapshot",
            Custom::DeleteSnapshot => "DeleteSnapshot",
            Custom::Suspend => "Suspend",
            Custom::Resume => "Resume",
        }
    }
}

/// What `argv[1]` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `prepare`.
    Prepare,
    /// `create` (create and power on).
    Create,
    /// `start`.
    Start,
    /// `stop` (hard).
    Stop,
    /// `reboot`.
    Reboot,
    /// `delete` (expunge).
    Delete,
    /// `status`.
    Status,
    /// `statuses` (4.22.1+ batch power report).
    Statuses,
    /// `getconsole`.
    GetConsole,
    /// A custom action.
    Custom(Custom),
    /// A Java class name (`com.cloud.…`, `org.apache.cloudstack.…`): refused at once.
    JavaCommand(String),
    /// Anything else: refused at once.
    Unknown(String),
}

impl Action {
    /// Classifies `argv[1]`.
    pub fn parse(raw: &str) -> Action {
        let trimmed = raw.trim();
        if trimmed.starts_with("com.cloud.") || trimmed.starts_with("org.apache.cloudstack.") {
            return Action::JavaCommand(trimmed.to_string());
        }
        let folded: String =
            trimmed.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).flat_map(char::to_lowercase).collect();
        match folded.as_str() {
            "prepare" => Action::Prepare,
            "create" => Action::Create,
            "start" => Action::Start,
            "stop" => Action::Stop,
            "reboot" => Action::Reboot,
            "delete" => Action::Delete,
            "status" => Action::Status,
            "statuses" => Action::Statuses,
            "getconsole" => Action::GetConsole,
            "listsnapshots" => Action::Custom(Custom::ListSnapshots),
            "createsnapshot" => Action::Custom(Custom::CreateSnapshot),
            "restoresnapshot" => Action::Custom(Custom::RestoreSnapshot),
            "deletesnapshot" => Action::Custom(Custom::DeleteSnapshot),
            "suspend" => Action::Custom(Custom::Suspend),
            "resume" => Action::Custom(Custom::Resume),
            _ => Action::Unknown(raw.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_and_customs_are_case_insensitive() {
        assert_eq!(Action::parse("STATUS"), Action::Status);
        assert_eq!(Action::parse("GetConsole"), Action::GetConsole);
        assert_eq!(Action::parse("createsnapshot"), Action::Custom(Custom::CreateSnapshot));
        assert_eq!(Action::parse("Create Snapshot"), Action::Custom(Custom::CreateSnapshot));
        assert_eq!(Action::parse("ListSnapshots"), Action::Custom(Custom::ListSnapshots));
        for c in Custom::ALL {
            assert_eq!(Action::parse(c.name()), Action::Custom(c));
        }
    }

    #[test]
    fn java_class_names_and_unknowns() {
        assert_eq!(
            Action::parse("com.cloud.agent.api.ModifyStoragePoolCommand"),
            Action::JavaCommand("com.cloud.agent.api.ModifyStoragePoolCommand".into())
        );
        assert!(matches!(Action::parse("org.apache.cloudstack.storage.command.CopyCommand"), Action::JavaCommand(_)));
        assert_eq!(Action::parse("deploy"), Action::Unknown("deploy".into()));
        assert_eq!(Action::parse(""), Action::Unknown("".into()));
        // A name that merely contains a class-name prefix is not a Java command.
        assert!(matches!(Action::parse("xcom.cloud.x"), Action::Unknown(_)));
    }
}
