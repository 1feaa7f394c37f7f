describe ManageIQ::Providers::__NAME__::InfraManager::MetricsCapture do
  it "returns the counters and the values keyed by ems_ref and Time" do
    ems = new_ems("sim")
    vm = ManageIQ::Providers::__NAME__::InfraManager::Vm.new(:ems_ref => "101", :ext_management_system => ems)
    start_time = Time.utc(2026, 1, 2, 15, 0, 0)
    end_time = Time.utc(2026, 1, 2, 16, 0, 0)
    stub_cli(%w[metrics --vm 101 --start 2026-01-02T15:00:00Z --end 2026-01-02T16:00:00Z --interval realtime],
             fixture("sim_metrics.json"))
    counters, values = described_class.new(vm).perf_collect_metrics("realtime", start_time, end_time)
    expect(counters["101"].keys).to match_array(%w[cpu_usage_rate_average disk_usage_rate_average mem_usage_absolute_average net_usage_rate_average])
    expect(values["101"].keys).to all(be_a(Time))
    expect(values["101"].size).to eq(JSON.parse(fixture("sim_metrics.json")).size)
    expect(values["101"].values.first.keys).to include("cpu_usage_rate_average")
  end
end
