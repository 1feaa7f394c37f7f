describe ManageIQ::Providers::__NAME__::InfraManager::Vm do
  let(:ems) { new_ems("sim") }
  let(:vm) do
    described_class.new(:ems_ref => "101", :name => "web", :raw_power_state => "running", :ext_management_system => ems)
  end
  let(:done) { JSON.generate("task" => "pv1:done", "state" => "completed", "new_vm" => nil) }

  it "maps the normalised power states" do
    expect(described_class.calculate_power_state("running")).to eq("on")
    expect(described_class.calculate_power_state("stopped")).to eq("off")
    expect(described_class.calculate_power_state("suspended")).to eq("suspended")
    expect(described_class.calculate_power_state("template")).to eq("never")
    expect(described_class.calculate_power_state("weird")).to eq("unknown")
    expect(vm.power_state).to eq("on")
  end

  it "declares what it supports from its state" do
    expect(vm.supports?(:stop)).to be(true)
    expect(vm.supports?(:start)).to be(false)
    expect(vm.supports?(:terminate)).to be(false)
    expect(vm.supports?(:snapshots)).to be(true)
  end

  {
    :raw_start          => [%w[op start --vm 101 --wait], "on"],
    :raw_stop           => [%w[op stop --vm 101 --wait], "off"],
    :raw_suspend        => [%w[op suspend --vm 101 --wait], "suspended"],
    :raw_shutdown_guest => [%w[op shutdown_guest --vm 101 --wait], "off"],
    :raw_reboot_guest   => [%w[op reboot_guest --vm 101 --wait], "on"],
    :raw_reset          => [%w[op reset --vm 101 --wait], "on"]
  }.each do |method, (params, state)|
    it "#{method} runs `polyvisor manageiq #{params.join(" ")}` and sets a provisional state" do
      stub_cli(params, done)
      vm.public_send(method)
      expect(AwesomeSpawn.calls.map { |c| c[1] }).to eq([["manageiq", *params]])
      expect(vm.power_state).to eq(state)
    end
  end

  it "raw_destroy" do
    stub_cli(%w[op destroy --vm 101 --wait], done)
    vm.raw_destroy
    expect(AwesomeSpawn.calls.size).to eq(1)
  end

  it "snapshot create, revert and remove" do
    stub_cli(["op", "snapshot_create", "--vm", "101", "--snapshot", "s1", "--description", "before", "--wait"], done)
    vm.raw_create_snapshot("s1", "before")
    snapshots = ems.vms_and_templates # nothing refreshed: use a stand-in row
    expect(snapshots).to eq([])
    StandIn::DB.table(ems.id, :snapshots)["101|s1"] = {:id => 7, :vm_or_template => "101", :uid => "s1", :uid_ems => "s1"}
    stub_cli(%w[op snapshot_revert --vm 101 --snapshot s1 --wait], done)
    vm.raw_revert_to_snapshot(7)
    stub_cli(%w[op snapshot_remove --vm 101 --snapshot s1 --wait], done)
    vm.raw_remove_snapshot(7)
    expect(AwesomeSpawn.calls.map { |c| c[1][2] }).to eq(%w[snapshot_create snapshot_revert snapshot_remove])
  end

  it "clones a template with CPU and memory" do
    template = ManageIQ::Providers::__NAME__::InfraManager::Template.new(:ems_ref => "9000", :ext_management_system => ems)
    stub_cli(%w[op clone --template 9000 --name new-1 --cpus 2 --memory-mb 1024 --wait], fixture("sim_op_clone.json"))
    expect(template.raw_clone("new-1", 2, 1024)).to eq(JSON.parse(fixture("sim_op_clone.json"))["new_vm"])
  end

  it "turns exit 2 into MiqInvalidCredentialsError and exit 3 into MiqUnreachableError" do
    stub_cli(%w[op start --vm 101 --wait], JSON.generate("error" => {"kind" => "auth", "message" => "bad token"}), 2)
    expect { vm.raw_start }.to raise_error(MiqException::MiqInvalidCredentialsError, "bad token")
    stub_cli(%w[op start --vm 101 --wait], JSON.generate("error" => {"kind" => "unreachable", "message" => "down"}), 3)
    expect { vm.raw_start }.to raise_error(MiqException::MiqUnreachableError, "down")
  end
end
