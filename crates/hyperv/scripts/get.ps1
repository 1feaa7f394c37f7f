# polyvisor-hyperv script: get v1
Out-PvJson (ConvertTo-PvVm (Get-PvVm $pv.id))
