class ManageIQ::Providers::__NAME__::InfraManager::Vm < ManageIQ::Providers::InfraManager::Vm
  # The CLI's normalised `power` (raw_power_state keeps the platform's own word).
  POWER_STATES = {
    "running"   => "on",
    "stopped"   => "off",
    "paused"    => "paused",
    "suspended" => "suspended",
    "starting"  => "wait_for_launch",
    "rebooting" => "reboot_in_progress",
    "error"     => "non_operational",
    "migrating" => "migrating",
    "template"  => "never",
    # Native words the platforms report in raw_power_state.
    "shutoff"   => "off",
    "stopping"  => "off",
    "suspending" => "suspended",
    "never"     => "never"
  }.freeze

  supports :snapshots
  supports :start do
    _("The VM is already running") if current_state == "on"
  end
  supports :stop do
    _("The VM is not running") if current_state == "off"
  end
  supports :suspend do
    _("The VM is not running") unless current_state == "on"
  end
  supports :shutdown_guest do
    _("The VM is not running") unless current_state == "on"
  end
  supports :reboot_guest do
    _("The VM is not running") unless current_state == "on"
  end
  supports :reset do
    _("The VM is not running") unless current_state == "on"
  end
  supports :terminate do
    _("The VM must be powered off") unless current_state == "off"
  end
  supports :capture

  def self.calculate_power_state(raw_power_state)
    POWER_STATES[raw_power_state.to_s] || "unknown"
  end

  def raw_start
    run_operation("start", "on")
  end

  def raw_stop
    run_operation("stop", "off")
  end

  def raw_suspend
    run_operation("suspend", "suspended")
  end

  def raw_shutdown_guest
    run_operation("shutdown_guest", "off")
  end

  def raw_reboot_guest
    run_operation("reboot_guest", "on")
  end

  def raw_reset
    run_operation("reset", "on")
  end

  def raw_destroy
    with_provider_connection { |conn| conn.operation("destroy", ems_ref, :wait => true) }
  end

  def raw_create_snapshot(name, desc = nil, memory = false)
    with_provider_connection do |conn|
      conn.operation("snapshot_create", ems_ref, :snapshot => name, :description => desc, :memory => memory, :wait => true)
    end
  end

  def raw_revert_to_snapshot(snapshot_id)
    snapshot = snapshots.find_by(:id => snapshot_id)
    with_provider_connection { |conn| conn.operation("snapshot_revert", ems_ref, :snapshot => snapshot.uid_ems, :wait => true) }
  end

  def raw_remove_snapshot(snapshot_id)
    snapshot = snapshots.find_by(:id => snapshot_id)
    with_provider_connection { |conn| conn.operation("snapshot_remove", ems_ref, :snapshot => snapshot.uid_ems, :wait => true) }
  end

  private

  def run_operation(action, provisional_state)
    with_provider_connection { |conn| conn.operation(action, ems_ref, :wait => true) }
    # Provisional state for the UI; the next (event-driven) refresh corrects it.
    update!(:raw_power_state => provisional_state == "on" ? "running" : provisional_state == "off" ? "stopped" : provisional_state)
  end
end
