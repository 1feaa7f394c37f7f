describe ManageIQ::Providers::__NAME__::InfraManager::EventParser do
  let(:ems) { new_ems("sim") }
  let(:lines) { fixture("sim_events.ndjson").lines }

  it "turns each CLI event line into an EmsEvent hash linked to the VM" do
    event = JSON.parse(lines.find { |l| l.include?("vm_powered_off") })
    hash = described_class.event_to_hash(event, ems.id)
    expect(hash).to include(:event_type => "vm_powered_off", :source => "SIM", :ems_id => ems.id,
                            :vm_ems_ref => event["vm_ems_ref"], :host_ems_ref => "sim1")
    expect(hash[:timestamp]).to be_a(Time)
    expect(described_class.event_to_hash({"cursor" => "x"}, ems.id)).to be_nil
  end

  it "the stream keeps the cursor of every line and yields only events" do
    stream = ManageIQ::Providers::__NAME__::InfraManager::EventCatcher::Stream.new(ems)
    seen = []
    lines.each { |l| stream.handle_line(l) { |e| seen << e } }
    events = lines.map { |l| JSON.parse(l) }.select { |e| e["event_type"] }
    expect(seen).to eq(events)
    expect(stream.cursor).to eq(JSON.parse(lines.last)["cursor"])
    expect(ems.last_event_cursor).to eq(stream.cursor)
    # A restarted stream starts from the stored cursor.
    restarted = ManageIQ::Providers::__NAME__::InfraManager::EventCatcher::Stream.new(ems)
    expect(ems.connect.follow_command(restarted.cursor)).to eq(["polyvisor", "manageiq", "events", "--follow", "--since", stream.cursor])
  end

  it "the runner queues parsed events" do
    runner = ManageIQ::Providers::__NAME__::InfraManager::EventCatcher::Runner.new(:ems_id => ems.id, :ems => ems)
    lines.map { |l| JSON.parse(l) }.select { |e| e["event_type"] }.each { |e| runner.queue_event(e) }
    expect(EmsEvent.queued.map { |q| q[2][:event_type] }).to include("vm_created", "vm_powered_off", "snapshot_created")
  end

  it "the target parser targets the event's VM, or the whole manager when none is named" do
    event = Struct.new(:ext_management_system, :vm_ems_ref, :ems_id).new(ems, "101", ems.id)
    targets = ManageIQ::Providers::__NAME__::InfraManager::EventTargetParser.new(event).parse
    expect(targets.map(&:association)).to eq([:vms_and_templates])
    expect(targets.first.manager_ref).to eq(:ems_ref => "101")
    event.vm_ems_ref = nil
    targets = ManageIQ::Providers::__NAME__::InfraManager::EventTargetParser.new(event).parse
    expect(targets.map(&:association)).to eq([:ext_management_systems])
  end
end
